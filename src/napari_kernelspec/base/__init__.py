"""The shared base every other sub-package builds on: errors, the kernel bank, atomic writes.

Imports nothing from the rest of the package and nothing heavy (numpy only).
"""
