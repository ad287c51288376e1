FROM busybox
RUN echo a \

    b
  run echo lower case works
