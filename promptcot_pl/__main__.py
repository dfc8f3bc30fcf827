from promptcot_pl.cli import main

raise SystemExit(main())
