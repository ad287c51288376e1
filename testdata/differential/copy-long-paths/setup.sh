d=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb/cccccccccccccccccccccccccccccccccccccccccccccccccccc
mkdir -p $d && echo deep > $d/file-with-a-rather-long-name-that-pushes-past-one-hundred-bytes.txt
ln -s $d/file-with-a-rather-long-name-that-pushes-past-one-hundred-bytes.txt long-target-link
