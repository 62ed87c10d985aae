"""Emotions of the faces in photos with only an exported ONNX file, ONNX Runtime, OpenCV and NumPy (no PyTorch, no
fer_core): what a program that ships `fer-export`'s file does.

    python -m fer_core.export --out fer.onnx             # once, where fer_core is installed
    python examples/onnx_predict.py fer.onnx photo.jpg [more.jpg ...]

Faces are found with OpenCV's frontal Haar cascade (upright faces only; fer_core's own detector also finds turned and
side views) and cut as FER2013's were: the square on the box, shrunk to 48 x 48 with area averaging.
"""

from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import onnxruntime as ort


def face_crops(grey: np.ndarray, cascade: cv2.CascadeClassifier) -> tuple[list[tuple[int, int, int, int]], np.ndarray]:
    """Boxes (x, y, w, h) and (N, 48, 48) uint8 crops of the upright faces in a greyscale picture."""
    short = min(grey.shape)
    boxes = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(max(24, short // 12),) * 2)
    crops = []
    for x, y, w, h in boxes:
        side = max(w, h)
        x0, y0 = x + w // 2 - side // 2, y + h // 2 - side // 2
        padded = cv2.copyMakeBorder(grey, side, side, side, side, cv2.BORDER_REPLICATE)  # squares near an edge
        square = padded[y0 + side:y0 + 2 * side, x0 + side:x0 + 2 * side]
        crops.append(cv2.resize(square, (48, 48), interpolation=cv2.INTER_AREA))
    return [tuple(int(v) for v in b) for b in boxes], np.array(crops, np.uint8).reshape(-1, 48, 48)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    session = ort.InferenceSession(argv[0], providers=["CPUExecutionProvider"])
    emotions = json.loads(session.get_modelmeta().custom_metadata_map["emotions"])
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    failed = 0
    for path in argv[1:]:
        try:
            grey = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_GRAYSCALE)
        except OSError as e:
            grey, reason = None, e.strerror or str(e)
        else:
            reason = "not an image OpenCV can read"
        if grey is None:
            print(json.dumps({"file": path, "error": reason}))
            failed += 1
            continue
        boxes, crops = face_crops(grey, cascade)
        probs = session.run(None, {"faces": crops})[0] if len(crops) else np.zeros((0, len(emotions)))
        faces = [{"box": box, "label": emotions[int(p.argmax())], "confidence": round(float(p.max()), 4),
                  "probs": {e: round(float(v), 4) for e, v in zip(emotions, p, strict=True)}}
                 for box, p in zip(boxes, probs, strict=True)]
        print(json.dumps({"file": path, "faces": faces}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
