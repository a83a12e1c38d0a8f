"""Forecasting networks and the model zoo.

- :mod:`~nowcast.models.cells`: the ConvLSTM cell (one fused gate convolution);
- :mod:`~nowcast.models.tmu`: the Transferable Memory Unit and the memory bank of sources;
- :mod:`~nowcast.models.predictor`: the stacked predictor over patch-folded frames;
- :mod:`~nowcast.models.config`: typed model configs (``configs/models/*.yaml``);
- :mod:`~nowcast.models.normalization`: physical units <-> model space, exactly;
- :mod:`~nowcast.models.zoo`: checkpoints, :class:`~nowcast.models.zoo.Forecaster`.

Submodules are imported explicitly (``from nowcast.models.zoo import load_forecaster``)
so that reading a config never pays for importing torch.
"""
