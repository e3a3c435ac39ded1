"""Timing studies: `bench_devices` (one recipe on CPU, GPU, cuDNN) and `bench_conv` (convolution implementations).

from convforge.bench.devices import bench_devices
from convforge.bench.conv import bench_conv
"""
