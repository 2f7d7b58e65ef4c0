"""Where weights come from: model tables, checkpoint files, pretrained weights, the trained
LeNet5, the kernel cache and :func:`load_kernels`, which returns a
:class:`~napari_kernelspec.base.bank.KernelBank`.

torch and torchvision are imported only inside the functions that need them.
"""
