mkdir -p a b
echo one > a/one && echo two > b/two
tar --numeric-owner --owner=0 --group=0 -C a -cf sub/a.tar one
tar --numeric-owner --owner=0 --group=0 -C b -czf sub/b.tar.gz two
rm -rf a b
