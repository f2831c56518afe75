"""Encryption: an AES-GCM payload codec; the server only ever sees ciphertext."""

import asyncio
import dataclasses
import os
from datetime import timedelta
from typing import Iterable, List

import temporalio.converter
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.converter import PayloadCodec
from temporalio.worker import Worker

# native extension: must not be re-imported inside the workflow sandbox
with workflow.unsafe.imports_passed_through():
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SECRET = "attack at dawn"


class EncryptionCodec(PayloadCodec):
    def __init__(self, key: bytes, key_id: str = "test-key-id") -> None:
        super().__init__()
        self.key_id = key_id
        self.encryptor = AESGCM(key)
        self.encoded: List[Payload] = []  # every payload this codec handed to the server

    async def encode(self, payloads: Iterable[Payload]) -> List[Payload]:
        out = [
            Payload(
                metadata={"encoding": b"binary/encrypted", "encryption-key-id": self.key_id.encode()},
                data=self.encrypt(p.SerializeToString()),
            )
            for p in payloads
        ]
        self.encoded.extend(out)
        return out

    async def decode(self, payloads: Iterable[Payload]) -> List[Payload]:
        ret: List[Payload] = []
        for p in payloads:
            if p.metadata.get("encoding", b"").decode() != "binary/encrypted":
                ret.append(p)
                continue
            key_id = p.metadata.get("encryption-key-id", b"").decode()
            if key_id != self.key_id:
                raise ValueError(f"Unknown key ID: {key_id}")
            ret.append(Payload.FromString(self.decrypt(p.data)))
        return ret

    def encrypt(self, data: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self.encryptor.encrypt(nonce, data, None)

    def decrypt(self, data: bytes) -> bytes:
        return self.encryptor.decrypt(data[:12], data[12:], None)


@activity.defn
async def shout(message: str) -> str:
    return message.upper()


@workflow.defn
class EncryptedWorkflow:
    @workflow.run
    async def run(self, message: str) -> str:
        loud = await workflow.execute_activity(shout, message, start_to_close_timeout=timedelta(seconds=10))
        return f"{message} / {loud}"


def _all_payloads(history):
    """(event type, payload) for every payload in the events this workflow produces."""
    for e in history.events:
        name = EventType.Name(e.event_type)
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            ps = e.workflow_execution_started_event_attributes.input.payloads
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            ps = e.activity_task_scheduled_event_attributes.input.payloads
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            ps = e.activity_task_completed_event_attributes.result.payloads
        elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            ps = e.workflow_execution_completed_event_attributes.result.payloads
        else:
            continue
        for p in ps:
            yield name, p


async def test_encrypted_payloads_round_trip_and_stay_encrypted(client, task_queue, new_id):
    codec = EncryptionCodec(AESGCM.generate_key(bit_length=256))
    converter = dataclasses.replace(temporalio.converter.default(), payload_codec=codec)
    enc_client = Client(**{**client.config(), "data_converter": converter})

    async with Worker(enc_client, task_queue=task_queue, workflows=[EncryptedWorkflow], activities=[shout]):
        handle = await enc_client.start_workflow(
            EncryptedWorkflow.run, SECRET, id=new_id("encrypted"), task_queue=task_queue
        )
        result = await asyncio.wait_for(handle.result(), 30)

    assert result == f"{SECRET} / {SECRET.upper()}"

    # a client without the codec sees only ciphertext
    plain_history = await client.get_workflow_handle(handle.id).fetch_history()
    seen = list(_all_payloads(plain_history))
    assert {name for name, _ in seen} == {
        "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
        "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED",
        "EVENT_TYPE_ACTIVITY_TASK_COMPLETED",
        "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED",
    }
    for name, p in seen:
        assert p.metadata["encoding"] == b"binary/encrypted", name
        assert p.metadata["encryption-key-id"] == b"test-key-id", name
        assert SECRET.encode() not in p.data and SECRET.upper().encode() not in p.data, name

    # ... and each stored payload is byte-identical to one the codec produced
    produced = {p.SerializeToString(deterministic=True) for p in codec.encoded}
    for name, p in seen:
        assert p.SerializeToString(deterministic=True) in produced, f"{name} payload was altered by the server"

    # the stored ciphertext decrypts to the original JSON values
    start_payload = seen[0][1]
    inner = (await codec.decode([start_payload]))[0]
    assert inner.metadata["encoding"] == b"json/plain"
    assert inner.data == b'"attack at dawn"'
