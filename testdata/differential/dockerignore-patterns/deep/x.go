dx
