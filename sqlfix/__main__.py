try:
    from sqlfix.cli.main import main
except KeyboardInterrupt:  # Ctrl-C while importing (pglast, psycopg): as main() would say it
    import sys

    sys.stderr.write("sqlfix: interrupted\n")
    raise SystemExit(130) from None

raise SystemExit(main())
