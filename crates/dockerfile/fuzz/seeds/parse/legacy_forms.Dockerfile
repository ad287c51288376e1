FROM busybox
MAINTAINER Someone <someone@example.com>
ENV GREETING hello world
LABEL legacy value with spaces
RUN echo $GREETING
CMD echo shell form
