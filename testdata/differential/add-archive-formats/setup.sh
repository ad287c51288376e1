mkdir -p t/dir && echo content > t/dir/file && ln -s dir/file t/link && chmod 0700 t/dir
tar --numeric-owner --owner=0 --group=0 -C t -cjf a.tar.bz2 .
tar --numeric-owner --owner=0 --group=0 -C t -cJf a.tar.xz .
tar --numeric-owner --owner=0 --group=0 -C t -czf a.tgz .
tar --numeric-owner --owner=0 --group=0 -C t -cf a.tar .
rm -rf t
