echo shared > first && ln first second && mkdir d && ln first d/third
