import sys

from data_prep.synthetic.files import main

if __name__ == "__main__":
    sys.exit(main())
