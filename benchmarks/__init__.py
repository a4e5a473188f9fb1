"""Throughput benchmarks (figures and ratios, never assertions); see the README's "Speed" section."""
