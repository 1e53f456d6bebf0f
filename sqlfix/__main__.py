from sqlfix.cli import main

raise SystemExit(main())
