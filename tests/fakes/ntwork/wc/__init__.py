"""The native layer. In the real package `wcprobe` is a closed-source .pyd; here it is a fake."""
