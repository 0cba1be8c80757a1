//go:build ignore

// The root container in the cAdvisor types of Kubernetes v1.37 and later
// (github.com/google/cadvisor/lib/model). hack/build-kube.sh copies this file
// or cadvisor_info.go beside main.go, whichever the version's kubelet uses.
package main

import cadvisorapi "github.com/google/cadvisor/lib/model"

func (c *rootCadvisor) ContainerInfoV2(name string, _ cadvisorapi.RequestOptions) (map[string]cadvisorapi.ContainerInfo, error) {
	if name != "/" {
		return map[string]cadvisorapi.ContainerInfo{}, nil
	}
	now, cpu, cpuRate, rss := c.rootSample()
	return map[string]cadvisorapi.ContainerInfo{"/": {
		ContainerReference: cadvisorapi.ContainerReference{Name: "/"},
		Spec: cadvisorapi.ContainerSpec{CreationTime: c.start, HasCpu: true, HasMemory: true,
			Memory: cadvisorapi.MemorySpec{Limit: rootMemoryLimit}},
		Stats: []*cadvisorapi.ContainerStats{{
			Timestamp: now,
			Cpu:       &cadvisorapi.CpuStats{Usage: cadvisorapi.CpuUsage{Total: cpu}},
			CpuInst:   &cadvisorapi.CpuInstStats{Usage: cadvisorapi.CpuInstUsage{Total: cpuRate}},
			Memory:    &cadvisorapi.MemoryStats{Usage: rss, WorkingSet: rss, RSS: rss},
		}},
	}}, nil
}
