"""Structure-aware hostile messages for the server: what a peer can send that a random byte
string rarely is — deep nesting, huge numbers and dimensions, frames that disagree with their
descriptors, valid messages with one part mutated. Deterministic per seed."""

from __future__ import annotations

import json
import random

from backend import protocol
from conftest import png_bytes

DEPTHS = (2, 31, 33, 200, 3000, 20000)
DIGITS = (19, 20, 21, 64, 5000, 50000)
DIMENSIONS = (0, 1, 2**31 - 1, 2**31, 2**32, 2**63, 2**64, -1, -(2**63))
DTYPES = ("uint8", "int32", "float32", "bytes", "float64", "object", "", None, 7)
TYPES = ("ping", "submit", "status", "cancel", "result", "pong", "accepted", "teleport", "", None, 3, [])


def valid_messages() -> list[list[bytes]]:
    """Encoded messages a correct client may send (the mutations start from these)."""
    messages = [protocol.ping(1.5), protocol.status("job-1"), protocol.cancel("job-1", "ab" * 16),
                protocol.submit_reconstruct("job-2", [png_bytes(32, 32)], {"quality": "preview"}),
                protocol.submit_generate("job-3", "a wooden chair", {"seed": 3})]
    return [[bytes(frame) for frame in protocol.encode(m)] for m in messages]


def nested(depth: int, leaf: object = 1) -> str:
    if depth % 2:
        return "[" * depth + json.dumps(leaf) + "]" * depth
    return '{"a":' * depth + json.dumps(leaf) + "}" * depth


def deep_nesting(rng: random.Random) -> list[bytes]:
    body = nested(rng.choice(DEPTHS))
    where = rng.choice(["t", "params", "prompt", "job", "v", "frames", "resend"])
    if where == "prompt":
        return [f'{{"v":1,"type":"submit","job":"j","task":"generate","params":{{"prompt":{body}}}}}'.encode()]
    if where == "params":
        return [f'{{"v":1,"type":"submit","job":"j","task":"reconstruct","params":{body}}}'.encode()]
    return [f'{{"v":1,"type":"{rng.choice(["ping", "status"])}","job":"j","{where}":{body}}}'.encode()]


def huge_number(rng: random.Random) -> list[bytes]:
    digits = "".join(rng.choice("0123456789") for _ in range(rng.choice(DIGITS)))
    number = rng.choice([digits, "-" + digits, "1e999", "-1e999", "NaN", "Infinity", "-Infinity",
                         "1" + "0" * 400 + ".5", "0." + digits, digits + "e" + digits[:6]])
    where = rng.choice(['"t"', '"v"', '"queue_position"', '"seed"'])
    if where == '"seed"':
        return [f'{{"v":1,"type":"submit","job":"j","task":"generate","params":{{"prompt":"a cup","seed":{number}}}}}'
                .encode()]
    return [f'{{"v":1,"type":"ping","job":null,{where}:{number}}}'.encode()]


def descriptor_mismatch(rng: random.Random) -> list[bytes]:
    count = rng.randint(0, 4)
    descriptors = []
    for i in range(count):
        shape = [rng.choice(DIMENSIONS) for _ in range(rng.randint(0, 6))]
        desc = {"name": rng.choice([f"f{i}", "", None, "image0", 3]), "dtype": rng.choice(DTYPES)}
        if rng.random() < 0.8:
            desc["shape"] = rng.choice([shape, "3", None, [1.5], [True, 2]])
        descriptors.append(rng.choice([desc, desc, "frame", None, [desc]]))
    sent = count + rng.choice([-1, 0, 0, 1])
    frames = [bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 3, 12, 64]))) for _ in range(max(0, sent))]
    header = {"v": 1, "type": rng.choice(["ping", "submit"]), "job": "j", "task": "reconstruct", "frames": descriptors}
    return [json.dumps(header).encode(), *frames]


def wrong_types(rng: random.Random) -> list[bytes]:
    header = {"v": rng.choice([1, 1, "1", True, 1.0, None, [1]]), "type": rng.choice(TYPES),
              "job": rng.choice(["j", "j\n", "", "x" * 65, "é", None, 5, ["j"]])}
    for field in rng.sample(["task", "params", "resend", "token", "t", "client", "frames", "extra"], rng.randint(0, 4)):
        header[field] = rng.choice([None, True, -1, 2**70, 1.5, "", "x" * 300, [], {}, {"prompt": 3}])
    return [json.dumps(header).encode()]


def mutated_valid(rng: random.Random) -> list[bytes]:
    frames = [bytearray(frame) for frame in rng.choice(valid_messages())]
    for _ in range(rng.randint(1, 4)):
        frame = frames[rng.randrange(len(frames))]
        action = rng.choice(["flip", "truncate", "insert", "duplicate_frame", "drop_frame"])
        if action == "flip" and frame:
            frame[rng.randrange(len(frame))] ^= 1 << rng.randrange(8)
        elif action == "truncate" and frame:
            del frame[rng.randrange(len(frame)):]
        elif action == "insert":
            frame[rng.randrange(len(frame) + 1):0] = rng.choice([b"[", b"{", b'"', b"\\", b"\x00", b"\xff", b"9" * 30])
        elif action == "duplicate_frame":
            frames.append(bytearray(frame))
        elif action == "drop_frame" and len(frames) > 1:
            frames.pop(rng.randrange(1, len(frames)))
    return [bytes(frame) for frame in frames]


def random_json(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(7 if depth < 6 else 4)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 2**53, 2**64, 1e308, -0.0])
    if kind == 2:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x3000)])) for _ in range(rng.randrange(12)))
    if kind == 3:
        return rng.random()
    if kind in (4, 5):
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {str(random_json(rng, depth + 1))[:20]: random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def json_values(rng: random.Random) -> list[bytes]:
    value = random_json(rng)
    if isinstance(value, dict) and rng.random() < 0.7:
        value.update({"v": 1, "type": rng.choice(["ping", "status", "submit"]), "job": "j"})
    return [json.dumps(value).encode()]


GENERATORS = (deep_nesting, huge_number, descriptor_mismatch, wrong_types, mutated_valid, json_values)


def hostile_messages(count: int, seed: int = 0):
    """``count`` messages, the generators taken in turn, each drawn from its own seeded stream."""
    rng = random.Random(seed)
    for index in range(count):
        yield GENERATORS[index % len(GENERATORS)](rng)
