from modelkube_serving.cli import main

raise SystemExit(main())
