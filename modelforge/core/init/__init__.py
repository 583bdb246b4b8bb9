"""Initialization, planned: each weight's initializer and why (`plan`), the kernels modelforge computes itself,
LSUV's and delta-orthogonal's decisions (`computed`), and the memory the plan will take (`memory`)."""
