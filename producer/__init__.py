"""The producer service: publish tasks with pipelined publisher confirms."""
