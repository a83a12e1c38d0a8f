"""Training data for the forecasters.

* :mod:`nowcast.data.moving_mnist` -- the Moving-MNIST protocol of
  Srivastava et al. (2015) on real MNIST digits, the synthetic benchmark the
  TMU paper starts from;
* :mod:`nowcast.data.seeds` -- real radar/satellite fields that seed the
  sequence simulator :mod:`nowcast.simulate` (no real radar *sequence* ships
  offline, so sequences are "simulated from real seeds");
* :mod:`nowcast.data.testcases` -- held-out test sets of the real MeteoSwiss
  field moved by a *known* motion (rigid, and with strong Lagrangian growth
  and decay), where the truth in the Lagrangian frame is known exactly.

Submodules are not imported here: Moving-MNIST needs torch and the seeds need
pyart/xradar, and neither should be paid for by a user of the other.
"""
