"""The operator registry: every operator of the language, one class each (see base.py).

    REGISTRY    model-file name -> operator class, in the order the docs list them
    HELPERS     helper-function name -> its source in generated modules
    COSTS       cost name -> Cost
"""
from . import linear, pooling, structure, activations  # noqa: F401  (they register themselves, in this order)
from .activations import (BoxMask, Clamp, Elu, EluGrad, Gelu, GeluGrad, HardSigmoid, LeakyRelu,
                          LeakyStep, Relu, Sigmoid, Silu, SiluGrad, Softplus, Step, Tanh)
from .base import (HELPERS, REALS, REGISTRY, SCALAR, Interval, Option, Resolved, Shape, ShapeError,
                   TensorOp, WeightShape)
from .costs import COSTS, Cost
from .linear import (LINEAR_NODES, Conv, ConvAdjoint, ConvTranspose, ConvTransposeAdjoint,
                     ConvTransposeWeightGrad, ConvWeightGrad, Dense, DenseAdjoint, DenseWeightGrad,
                     WeightedOp, WeightGrad)
from .pooling import (AvgPool, AvgPoolAdjoint, GlobalAvgPool, GlobalAvgPoolAdjoint, MaxPool,
                      MaxPoolWithIndices, MaxUnpool, MaxUnpoolAt, PoolIndices, Upsample, UpsampleAdjoint)
from .structure import Add, BiasGrad, CostGrad, Filled, Flatten, Identity, Total, Unflatten

__all__ = [
    "REGISTRY", "HELPERS", "COSTS", "Cost", "Interval", "REALS", "Option", "Resolved", "Shape",
    "SCALAR", "ShapeError", "TensorOp", "WeightShape", "WeightedOp", "LINEAR_NODES",
    "Dense", "DenseAdjoint", "Conv", "ConvAdjoint", "ConvTranspose", "ConvTransposeAdjoint",
    "WeightGrad", "DenseWeightGrad", "ConvWeightGrad", "ConvTransposeWeightGrad", "BiasGrad",
    "MaxPool", "MaxUnpool", "MaxUnpoolAt", "MaxPoolWithIndices", "PoolIndices", "AvgPool", "AvgPoolAdjoint", "GlobalAvgPool", "GlobalAvgPoolAdjoint",
    "Upsample", "UpsampleAdjoint", "Flatten", "Unflatten", "Identity", "Add", "Total", "CostGrad", "Filled",
    "Relu", "HardSigmoid", "Tanh", "Sigmoid", "Softplus", "Gelu", "Silu", "LeakyRelu", "Elu",
    "Step", "BoxMask", "GeluGrad", "SiluGrad", "LeakyStep", "EluGrad", "Clamp",
]
