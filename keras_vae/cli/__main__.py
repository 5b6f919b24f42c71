"""`python -m keras_vae.cli COMMAND [flags]`: the same as `keras-vae`."""

import sys

from keras_vae.cli import main

sys.exit(main())
