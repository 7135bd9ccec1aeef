"""Everything warren knows about pika, behind a few names.

    run_sessions(settings, name, stop, handler)   the connect/declare/run/reconnect loop
    Link, Channel                                 a connection and its channels
    Message, Outgoing                             a delivery, a message to send
    Publisher, PublishEvents                      publishing with confirms and re-sends
    wire.install(), wire.republished()            lenient decoding; copies that keep headers

No other module imports pika's connections, channels or exceptions.
"""

import pika

from warren.amqp.connect import check_url, connect, translate
from warren.amqp.link import Channel, Link, Message, Outgoing
from warren.amqp.publisher import Publisher, PublishEvents
from warren.amqp.session import SessionHandler, run_sessions

BasicProperties = pika.BasicProperties  # a message's properties: plain data, pika's class
PERSISTENT = pika.DeliveryMode.Persistent.value  # delivery_mode 2: written to disk

__all__ = [
           "PERSISTENT",
           "BasicProperties",
           "Channel",
           "Link",
           "Message",
           "Outgoing",
           "PublishEvents",
           "Publisher",
           "SessionHandler",
           "check_url",
           "connect",
           "run_sessions",
           "translate",
]
