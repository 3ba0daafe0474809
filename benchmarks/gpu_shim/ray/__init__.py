"""Import-time stand-in for Ray on the lent GPU machine only (it has no package index): EvoTorch imports
ray at module level, but a single-process search (no actors) never calls it. Not part of fmnist-pl."""


def remote(*args, **kwargs):
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda obj: obj


def is_initialized() -> bool:
    return False


class ObjectRef:  # used in type annotations only
    pass


class ActorHandle:
    pass
