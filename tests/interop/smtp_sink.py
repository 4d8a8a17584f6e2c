"""A real SMTP server for the mail tests (aiosmtpd): listens on 127.0.0.1:PORT and writes
each message it accepts to FOLDER as one JSON file (envelope, headers, decoded text body),
renamed into place once complete, so a reader never sees half a message.

Usage: smtp_sink.py PORT FOLDER. Prints "ready" once it accepts connections; runs until
killed.
"""

import email
import json
import os
import sys
import threading
from email import policy

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, folder):
        self.folder = folder
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        body = message.get_body(preferencelist=("plain",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(message.get("from", "")),
            "to": str(message.get("to", "")),
            "subject": str(message.get("subject", "")),
            "message_id": str(message.get("message-id", "")),
            "content_language": str(message.get("content-language", "")),
            "content_type": message.get_content_type(),
            "charset": message.get_content_charset() or "",
            # Lines as written (SMTP carries them with CRLF).
            "body": body.get_content().replace("\r\n", "\n") if body is not None else "",
        }
        with self.lock:
            self.count += 1
            name = f"{self.count:05d}.json"
        temporary = os.path.join(self.folder, name + ".tmp")
        with open(temporary, "w", encoding="utf-8") as out:
            json.dump(record, out, ensure_ascii=False)
        os.rename(temporary, os.path.join(self.folder, name))
        return "250 Message accepted for delivery"


def main():
    port = int(sys.argv[1])
    folder = sys.argv[2]
    os.makedirs(folder, exist_ok=True)
    controller = Controller(Sink(folder), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
