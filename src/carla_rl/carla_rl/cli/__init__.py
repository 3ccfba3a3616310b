"""The `carla-rl` command line: the parser, the commands and the generated reference."""
