"""samples: documents with known text for the storage and OCR tests, made at test time with
ImageMagick (`convert`): PNG, JPEG, multi-page TIFF, and PDF. Debian's ImageMagick policy
forbids writing PDF, so a PDF is written here by hand around JPEG pages (/DCTDecode)."""
import os
import subprocess


def image(path, text, size=None, pointsize=64):
    """A white page with text in black; the format follows path's extension."""
    cmd = ["convert", "-background", "white", "-fill", "black", "-font", "DejaVu-Sans",
           "-pointsize", str(pointsize)]
    if size:
        cmd += ["-size", size]
    cmd += ["label:" + text, "-bordercolor", "white", "-border", "40", path]
    subprocess.run(cmd, check=True, capture_output=True)
    return path


def tiff(path, texts):
    """A multi-page TIFF, one page per text."""
    d = os.path.dirname(path)
    pages = [image(os.path.join(d, f".tiffpage{i}.png"), t) for i, t in enumerate(texts)]
    subprocess.run(["convert", *pages, "-compress", "lzw", path], check=True, capture_output=True)
    for p in pages:
        os.unlink(p)
    return path


def _jpeg_size(data):
    """(width, height) from a JPEG's SOF marker."""
    i = 2
    while i < len(data):
        marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + length
    raise ValueError("no SOF marker")


def pdf(path, texts, dpi=150):
    """A PDF of one grayscale JPEG page per text, in order."""
    d = os.path.dirname(path)
    jpegs = []
    for i, t in enumerate(texts):
        j = image(os.path.join(d, f".pdfpage{i}.jpg"), t)
        subprocess.run(["convert", j, "-colorspace", "Gray", "-quality", "90", j], check=True)
        with open(j, "rb") as f:
            jpegs.append(f.read())
        os.unlink(j)
    objs = []  # object bodies, numbered from 1
    n = len(jpegs)
    kids = " ".join(f"{3 + 3 * i} 0 R" for i in range(n))
    objs.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objs.append(f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode())
    for i, data in enumerate(jpegs):
        w, h = _jpeg_size(data)
        pw, ph = w * 72 / dpi, h * 72 / dpi
        page, img, content = 3 + 3 * i, 4 + 3 * i, 5 + 3 * i
        objs.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {pw:.2f} {ph:.2f}] "
                    f"/Resources << /XObject << /Im{i} {img} 0 R >> >> "
                    f"/Contents {content} 0 R >>".encode())
        objs.append(f"<< /Type /XObject /Subtype /Image /Width {w} /Height {h} "
                    f"/ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /DCTDecode "
                    f"/Length {len(data)} >>\nstream\n".encode() + data + b"\nendstream")
        ops = f"q {pw:.2f} 0 0 {ph:.2f} 0 0 cm /Im{i} Do Q".encode()
        objs.append(f"<< /Length {len(ops)} >>\nstream\n".encode() + ops + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for num, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{num} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    with open(path, "wb") as f:
        f.write(out)
    return path
