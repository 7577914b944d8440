"""tinygen's version: one number, stamped into every generated file's banner."""

VERSION = "0.1.0"
