# ---------------------------------------------------------------------------------------------
# pcdsl.data: turn a `--data SPEC` string into mini-batches for a compiled model.
#
#   load_data(spec, input_shape, pad=, crop_pad=, hflip=, mean=, std=, ...) -> DataSplits
#   load_data_for(spec, input_shape, train_config, augment=, ...): the same, settings from a config
#   DataSplits.train / .test are Splits; Split.batches(batch_size, shuffle=, seed=, epoch=)
#   yields (x float32 [B, *input_shape], y int64 [B]), deterministic in (seed, epoch).
#
# Modules: spec (entry point), digits / idx / imagefolder (the three formats), shapes (fit to the
# model input), transforms (pad, crop, flip, normalise), split (batching and seeding).
# ---------------------------------------------------------------------------------------------
from pcdsl.data.errors import DataError
from pcdsl.data.spec import load_data, load_data_for
from pcdsl.data.split import DataSplits, Split

__all__ = ["DataError", "DataSplits", "Split", "load_data", "load_data_for"]
