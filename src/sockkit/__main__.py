from sockkit.cli import main

raise SystemExit(main())
