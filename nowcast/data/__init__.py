"""Training data for the forecasters.

* :mod:`nowcast.data.moving_mnist` -- the Moving-MNIST protocol of
  Srivastava et al. (2015) on real MNIST digits, the synthetic benchmark the
  TMU paper starts from;
* :mod:`nowcast.data.seeds` -- real radar/satellite fields that seed the
  sequence simulator :mod:`nowcast.simulate` (no real radar *sequence* ships
  offline, so sequences are "simulated from real seeds").

Submodules are not imported here: Moving-MNIST needs torch and the seeds need
pyart/xradar, and neither should be paid for by a user of the other.
"""
