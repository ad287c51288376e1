chmod 0775 shared shared/sub
chmod 0664 shared/a.txt
