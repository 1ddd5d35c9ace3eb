"""Deployment: the IA-RED² model in a fixed-shape form (``static_iared``) and ONNX export / ONNX Runtime
(``onnx_export``; needs the ``export`` extra: ``pip install -e .[export]``)."""
