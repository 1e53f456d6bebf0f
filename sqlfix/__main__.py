from sqlfix.cli.main import main

raise SystemExit(main())
