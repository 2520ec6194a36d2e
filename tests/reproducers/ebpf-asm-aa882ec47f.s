lddw r2,func(2)
exit