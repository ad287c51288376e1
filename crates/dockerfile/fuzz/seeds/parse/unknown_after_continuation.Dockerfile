FROM busybox
RUN echo a \
    && echo b
ENV A b c
BOGUS
