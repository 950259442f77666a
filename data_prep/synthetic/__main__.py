from data_prep.synthetic.files import main

raise SystemExit(main())
