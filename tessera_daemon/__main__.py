from tessera_daemon.cli import main

raise SystemExit(main())
