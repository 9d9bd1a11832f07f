from astrocore.cli import main

raise SystemExit(main())
