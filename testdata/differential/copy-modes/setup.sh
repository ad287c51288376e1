mkdir -p exec private sticky setgid empty-dir
printf '#!/bin/sh\n' > exec/run.sh && chmod 0755 exec/run.sh
echo secret > private/key && chmod 0600 private/key && chmod 0700 private
chmod 1777 sticky && chmod 2775 setgid
echo ro > readonly && chmod 0444 readonly
echo suid > suid && chmod 4755 suid
