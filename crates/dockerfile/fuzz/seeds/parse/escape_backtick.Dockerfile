# escape=`
FROM busybox
RUN echo one `
    two `
    three
COPY testfile.txt c:\
ENV P=c:\path
