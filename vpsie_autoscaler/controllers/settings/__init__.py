"""The ``AutoscalerSettings`` controller: cluster-wide settings applied while running (see
:mod:`.effective` for what wins over what, :mod:`.controller` for how they are applied)."""
