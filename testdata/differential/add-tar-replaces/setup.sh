mkdir -p t/was-file/child t/same-dir t/was-link
echo new > t/was-dir && echo c > t/was-file/child/c && echo added > t/same-dir/new && echo l > t/was-link/in
chmod 0700 t/same-dir
tar --numeric-owner --owner=0 --group=0 -C t -cf over.tar was-dir was-file same-dir was-link
rm -rf t
