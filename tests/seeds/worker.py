#!/usr/bin/env python
# The seed's worker.py (RabbitMQ tutorial two), with pika 1.x signatures
# (basic_consume(queue, on_message_callback)) and AMQP_URL for the broker address.
import os
import time

import pika

connection = pika.BlockingConnection(pika.URLParameters(os.environ["AMQP_URL"]))
channel = connection.channel()

channel.queue_declare(queue='task_queue', durable=True)
print(' [*] Waiting for messages. To exit press CTRL+C', flush=True)


def callback(ch, method, properties, body):
    print(" [x] Received %r" % (body,), flush=True)
    time.sleep(body.count(b'.'))
    print(" [x] Done", flush=True)
    ch.basic_ack(delivery_tag=method.delivery_tag)


channel.basic_qos(prefetch_count=1)
channel.basic_consume(queue='task_queue', on_message_callback=callback)

channel.start_consuming()
