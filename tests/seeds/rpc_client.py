#!/usr/bin/env python
# The seed's RpcClient (body "1.2", exclusive callback queue, one correlation id), with pika 1.x
# signatures and AMQP_URL for the broker address. Its manual basic_ack on the auto-named queue is
# kept as written; it prints the result on the last line.
import os

import pika


class RpcClient:
    def __init__(self):
        parameters = pika.URLParameters(os.environ["AMQP_URL"])
        self.connection = pika.BlockingConnection(parameters)
        self.channel = self.connection.channel()
        result = self.channel.queue_declare(queue='', exclusive=True)
        self.cb_queue_name = result.method.queue
        import uuid
        self.cid = str(uuid.uuid4())
        self.result = None
        self.channel.basic_consume(queue=self.cb_queue_name,
                                   on_message_callback=self.on_response)

    def serialized(self, *args, **kwargs):
        return str(args[0]) + '.' + str(args[1])

    def re_serialized(self, *args, **kwargs):
        return str(args[0])

    def on_response(self, ch, method, properties, body):
        if properties.correlation_id == self.cid:
            print('on_response , body = %s' % body)
            self.result = self.re_serialized(body.decode())
            self.channel.basic_ack(delivery_tag=method.delivery_tag)

    def call_add_point(self, px, py):
        self.result = None
        sent = self.serialized(px, py)
        self.channel.basic_publish(exchange='',
                                   routing_key='rpc_queue',
                                   properties=pika.BasicProperties(
                                       delivery_mode=2,
                                       reply_to=self.cb_queue_name,
                                       correlation_id=self.cid
                                   ),
                                   body=sent)
        while self.result is None:
            self.connection.process_data_events(time_limit=1)
        return self.result


if __name__ == '__main__':
    client = RpcClient()
    ret = client.call_add_point(1, 2)
    print('ret = %s' % ret)
