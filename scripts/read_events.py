"""Reads a TensorBoard events file with TensorBoard's own reader and prints what it holds
as JSON: {"scalars": {tag: [[step, value], ...]}, "images": {tag: [[step, width, height,
png_bytes], ...]}}. Used by tests/train_run.rs to check the events file fa writes.

usage: read_events.py EVENTS_FILE
"""
import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main():
    # size_guidance 0 keeps every event (the default samples scalars down to 10,000 and
    # images to 4).
    accumulator = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    tags = accumulator.Tags()
    out = {
        "scalars": {
            tag: [[event.step, event.value] for event in accumulator.Scalars(tag)]
            for tag in tags["scalars"]
        },
        "images": {
            tag: [
                [event.step, event.width, event.height, len(event.encoded_image_string)]
                for event in accumulator.Images(tag)
            ]
            for tag in tags["images"]
        },
    }
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
