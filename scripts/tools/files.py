"""The files the checks in this folder read: each path given, and the files ending in `suffix`
in each folder given (recursively, in name order)."""
import os


def files_under(paths, suffix):
    for path in paths:
        if os.path.isdir(path):
            for folder, _, files in sorted(os.walk(path)):
                for name in sorted(files):
                    if name.endswith(suffix):
                        yield os.path.join(folder, name)
        else:
            yield path
