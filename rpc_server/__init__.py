"""The RPC adder: requests on rpc_queue, replies to reply_to with the request's correlation_id."""
