ln -s ../../../../../../etc/hostname out
