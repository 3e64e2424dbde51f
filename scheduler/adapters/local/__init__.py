"""Embedded mode: manifest files, the local executor and its run supervisor."""
