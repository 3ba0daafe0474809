class ActorPool:  # referenced by EvoTorch's imports only
    pass
