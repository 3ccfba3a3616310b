"""Every benchmark in one place: chain, graph, learner, checkpoint and sim."""
